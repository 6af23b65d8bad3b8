"""gaiverse: GAI services for metaverse applications, after ITU FG-MV FGMV-22."""

__version__ = "0.1.0"
