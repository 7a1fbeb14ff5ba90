"""What the dashboard's pages share: the model picker, cached core calls, metric rows, error handling.

It lives beside pages/ (every .py file inside pages/ becomes a page). No compression logic here: that is
compressor/'s job; this package only caches and displays what the core computes.
"""
