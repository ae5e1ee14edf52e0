"""Small pieces shared by the API and the UI: settings from the environment and HTTP metrics."""
