"""msgr_bridge.outbound"""
