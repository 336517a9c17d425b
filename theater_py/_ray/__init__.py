"""The Ray backend (``pip install 'theater-py[ray]'``): actors of a runtime on a Ray cluster.

Imported only by ``Runtime(ray_address=...)``; ``import theater_py`` never imports Ray.
See docs/design/scale-out.md for the design and docs/ray.md for its use.
"""
