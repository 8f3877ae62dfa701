"""The ``accelc`` command line."""
