"""reportgen's Jinja templates and CSS; shipped as the package ``reportgen.templates`` (see pyproject.toml)."""
