"""shoprec over HTTP: a thin FastAPI layer over ``shoprec.service.Shoprec``.

Folders say what each part does: ``app`` wires everything, ``auth`` checks keys, ``limits`` caps
request bodies, ``metrics`` counts requests, ``errors`` turns every input problem into a 4xx
naming the field, ``schemas`` are the JSON shapes, and ``routes/`` holds one module per resource.
No recommender logic lives here: every route validates, calls the service and shapes the answer.
"""

from shoprec.http.app import create_app

__all__ = ["create_app"]
