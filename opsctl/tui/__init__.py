"""The Textual dashboard behind ``opsctl dashboard``.

``sources`` does all the I/O and returns the plain data of ``data``; the widgets only render
that data, so they can be shown with frozen data (tests, benchmark) as well as live.
"""
