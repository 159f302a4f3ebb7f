/* Billable portal: small progressive enhancements; every page works without it. */
(function () {
  "use strict";
  // Move focus to the main region after an htmx swap of the whole page body,
  // so keyboard and screen-reader users land on the new content.
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail && event.detail.target;
    if (target && target.id === "main") {
      target.focus({ preventScroll: true });
    }
  });
  // Buttons with data-confirm ask before a state change (e.g. reject, cancel).
  document.addEventListener("click", function (event) {
    var el = event.target.closest("[data-confirm]");
    if (el && !window.confirm(el.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);
})();
