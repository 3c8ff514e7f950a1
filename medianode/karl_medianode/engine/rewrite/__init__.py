"""SDP negotiation as rtpengine does it: read a party's SDP, then write the SDP for the other party."""
