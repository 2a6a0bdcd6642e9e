"""Datasets generated in memory: ``shapes`` (``tseg.data.synthetic.shapes``), nothing downloaded."""
