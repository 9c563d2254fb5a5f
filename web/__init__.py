"""The field app's static files (HTML, ES modules, CSS, icons, manifest, service worker), served at /app/."""
