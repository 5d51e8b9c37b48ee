"""Describe JSON of the sObjects every emulated org ships with."""
import pathlib

OBJECTS_DIR = pathlib.Path(__file__).parent
