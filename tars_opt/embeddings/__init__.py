"""The offline sentence-embedding model, its ONNX surgery, vector search and the vector store."""
