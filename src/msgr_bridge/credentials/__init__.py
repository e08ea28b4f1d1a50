"""msgr_bridge.credentials"""
