"""The index: what ingestion writes and answering reads — documents, embedders, stores."""
