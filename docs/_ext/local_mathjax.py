"""Serve MathJax from the site itself (placeholder; completed with the site issue)."""


def setup(app):
    return {"parallel_read_safe": True, "parallel_write_safe": True}
