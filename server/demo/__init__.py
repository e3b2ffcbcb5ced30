"""Demo data and the demo nodes of ``hoinghi demo``."""
