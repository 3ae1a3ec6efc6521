// Swagger UI configuration for the Taskmesh gateway: the document it serves at /openapi.json
// (same origin, so no CORS), the bearer token kept across reloads, and a successful Login
// authorizes the page with the token it returned.
"use strict";

const LOGIN_PATH = "/api/auth/login";
const SECURITY_SCHEME = "bearerAuth";

function authorizeAfterLogin(response) {
  const path = new URL(response.url, window.location.href).pathname;
  if (response.ok && path === LOGIN_PATH && response.body && response.body.accessToken) {
    window.ui.preauthorizeApiKey(SECURITY_SCHEME, response.body.accessToken);
    // preauthorizeApiKey skips persistAuthorization; the Authorize dialog would not.
    window.ui.authActions.persistAuthorizationIfNeeded();
  }
  return response;
}

window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayOperationId: true,
    displayRequestDuration: true,
    persistAuthorization: true,
    responseInterceptor: authorizeAfterLogin,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  });
};
