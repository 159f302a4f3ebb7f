/* Swagger UI of /api/v1/ (vendored, no CDN; no inline script under the Content-Security-Policy). */
(function () {
  "use strict";
  var node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: node.dataset.schemaUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    requestInterceptor: function (request) {
      // The schema itself is read with the portal session; API calls use the token you authorise with.
      request.headers["X-CSRFToken"] = node.dataset.csrfToken;
      return request;
    }
  });
})();
