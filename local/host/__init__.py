"""The local Azure Functions host: runs ``function_app.py`` against Azurite (blob and queue triggers,
timers, HTTP).

``local.host.host.LocalFunctionsHost`` is the entry point; its module docstring maps the behaviour to the
modules of this package.
"""
