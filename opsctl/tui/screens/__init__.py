"""The dashboard's screens: the main one and its modal dialogs."""
