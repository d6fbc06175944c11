// The board's only script of its own (the Content-Security-Policy allows no inline script): draws every
// <canvas data-chart> from the JSON in the <script type="application/json"> its data-source names.
(function () {
  "use strict";
  function series(canvas) {
    var data = JSON.parse(document.getElementById(canvas.dataset.source).textContent);
    var kind = canvas.dataset.chart;
    if (kind === "roc") {
      var points = data.fpr.map(function (x, i) { return {x: x, y: data.tpr[i]}; });
      return {type: "scatter", data: {datasets: [
        {label: "ROC", data: points, showLine: true, pointRadius: 0, borderColor: "#1f6feb", borderWidth: 2},
        {label: "chance", data: [{x: 0, y: 0}, {x: 1, y: 1}], showLine: true, pointRadius: 0,
         borderColor: "#999", borderDash: [4, 4], borderWidth: 1}]},
        options: {scales: {x: {min: 0, max: 1, title: {display: true, text: "false positive rate"}},
                           y: {min: 0, max: 1, title: {display: true, text: "true positive rate"}}}}};
    }
    if (kind === "scatter") {
      return {type: "scatter", data: {datasets: [{label: canvas.dataset.title, pointRadius: 2,
        data: data.x.map(function (x, i) { return {x: x, y: data.y[i]}; }), backgroundColor: "#1f6feb"}]},
        options: {}};
    }
    var labels = data[canvas.dataset.x || "labels"];
    return {type: kind, data: {labels: labels, datasets: [
      {label: canvas.dataset.title, data: data[canvas.dataset.series], backgroundColor: "#1f6feb88",
       borderColor: "#1f6feb"}]}, options: {}};
  }
  function draw(root) {
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (window.Chart.getChart(canvas)) { return; }
      var config = series(canvas);
      config.options.animation = false;
      config.options.responsive = false;
      config.options.plugins = {title: {display: true, text: canvas.dataset.title}};
      new window.Chart(canvas, config);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
})();
