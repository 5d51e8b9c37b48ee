// Draws Plotly figures whose JSON the server put in <script type="application/json"> (no inline scripts: CSP),
// on load and after every HTMX swap.
(function () {
  function draw(root) {
    if (!window.Plotly) { return; }
    root.querySelectorAll("[data-figure-id]").forEach(function (el) {
      var source = document.getElementById(el.dataset.figureId);
      if (!source) { return; }
      var fig = JSON.parse(source.textContent);
      window.Plotly.react(el, fig.data, fig.layout, {responsive: true, displaylogo: false});
      el.dataset.drawn = "true";
    });
  }
  window.addEventListener("load", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (evt) { draw(evt.detail.elt || document); });
  // A refused HTMX request (the item changed meanwhile, the CSRF token expired): say why, above the page.
  document.addEventListener("htmx:responseError", function (evt) {
    var box = document.getElementById("refused");
    if (!box) { return; }
    box.innerHTML = evt.detail.xhr.responseText;
    box.hidden = false;
  });
})();
