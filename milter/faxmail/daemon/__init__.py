"""faxmail-milter: the pymilter callbacks (milterd.py), the process (main.py) and the
long-lived parts it builds once (runtime.py)."""
