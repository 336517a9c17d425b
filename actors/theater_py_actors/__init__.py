"""Actors that ship with theater-py, and the message types they share."""
