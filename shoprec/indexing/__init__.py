"""Vector storage of products: one interface, an embedded (Qdrant Edge) and a server backend."""
