mod keycloak;
mod support;
