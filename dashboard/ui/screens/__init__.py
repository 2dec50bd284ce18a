"""Screens pushed over the main one: help, publish form, scenario picker, history; and the main screen."""
