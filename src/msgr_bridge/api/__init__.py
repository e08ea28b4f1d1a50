"""msgr_bridge.api"""
