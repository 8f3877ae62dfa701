// accelc report — small progressive enhancements; the page is complete without them.
(function () {
  "use strict";
  // zoom buttons of a graph panel scale its <svg> (the container scrolls)
  document.querySelectorAll(".zoom").forEach(function (box) {
    var svg = document.getElementById(box.dataset.target);
    if (!svg) return;
    var w = parseFloat(svg.getAttribute("width")), h = parseFloat(svg.getAttribute("height")), z = 1;
    function set(nz) {
      z = Math.min(4, Math.max(0.2, nz));
      svg.setAttribute("width", (w * z).toFixed(1));
      svg.setAttribute("height", (h * z).toFixed(1));
    }
    box.querySelectorAll("button").forEach(function (b) {
      b.addEventListener("click", function () {
        var a = b.dataset.zoom;
        if (a === "in") set(z * 1.25);
        else if (a === "out") set(z / 1.25);
        else if (a === "fit") {
          var avail = svg.parentElement.clientWidth - 4;
          set(Math.min(1, avail / w));
        } else set(1);
      });
    });
  });
  // hovering a node highlights it, its edges and its neighbours
  function highlight(svg, name, on) {
    var keep = {};
    keep[name] = true;
    svg.querySelectorAll("path.edge").forEach(function (e) {
      var hit = on && (e.dataset.src === name || e.dataset.dst === name);
      e.classList.toggle("hl", hit);
      if (hit) { keep[e.dataset.src] = true; keep[e.dataset.dst] = true; }
    });
    svg.querySelectorAll("g.node").forEach(function (n) {
      n.classList.toggle("hl", on && n.dataset.name === name);
      n.classList.toggle("dim", on && !keep[n.dataset.name]);
    });
  }
  document.querySelectorAll("svg.graph").forEach(function (svg) {
    svg.querySelectorAll("g.node").forEach(function (n) {
      n.addEventListener("mouseenter", function () { highlight(svg, n.dataset.name, true); });
      n.addEventListener("mouseleave", function () { highlight(svg, n.dataset.name, false); });
    });
  });
  // a chart row that names a graph node scrolls the final graph to it and flashes it
  document.querySelectorAll("svg.bar-chart g.row[data-node]").forEach(function (row) {
    row.classList.add("linked");
    row.addEventListener("click", function () {
      var svg = document.getElementById(row.closest("svg").dataset.graph || "graph-final");
      if (!svg) return;
      var node = svg.querySelector('g.node[data-name="' + CSS.escape(row.dataset.node) + '"]');
      if (!node) return;
      var panel = svg.closest("details");
      if (panel) panel.open = true;
      node.scrollIntoView({ block: "center", inline: "center" });
      highlight(svg, row.dataset.node, true);
      setTimeout(function () { highlight(svg, row.dataset.node, false); }, 1600);
    });
  });
  document.documentElement.dataset.ready = "1";
})();
