"""The outbound path, top to bottom: recipient -> authenticate -> authorize -> extract ->
render -> enqueue, and decision.py, which runs the steps for one mail."""
