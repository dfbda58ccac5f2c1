"""krefaudit: static analysis of Linux kernel page reference counting."""

__version__ = "0.1.0"
