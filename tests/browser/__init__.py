"""Real-browser tests; a package so its conftest does not shadow tests/conftest.py
(both would otherwise be imported as the module "conftest")."""
