"""Agents' and supervisors' voices on a call: WebRTC from the console's
browser to the process that holds the call (``link``), and the bridge that
joins it to the caller's audio (``bridge``)."""
