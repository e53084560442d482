"""Telephony: SIP signalling and SDP media negotiation for answering phone calls."""
