"""msgr_bridge.inbound"""
