// Draws the graphs a server without Graphviz sends as dot source (<figure data-dot>): Graphviz
// compiled to WebAssembly (viz-global.js), so the picture is the one `dot -Tsvg` draws. Runs on
// the page and on every fragment htmx swaps in.
(function () {
  "use strict";
  var viz = null;
  function draw(root) {
    var figures = root.querySelectorAll ? root.querySelectorAll("figure[data-dot]") : [];
    if (!figures.length) return;
    viz = viz || Viz.instance();
    viz.then(function (graphviz) {
      figures.forEach(function (figure) {
        figure.replaceChildren(graphviz.renderSVGElement(figure.dataset.dot));
        figure.removeAttribute("data-dot");
      });
    }).catch(function (error) {
      figures.forEach(function (figure) {
        var problem = document.createElement("p");
        problem.className = "problem";
        problem.textContent = "cannot draw the graph in this browser: " + error;
        figure.replaceChildren(problem);
      });
    });
  }
  htmx.onLoad(draw);
})();
