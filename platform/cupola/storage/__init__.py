"""Storage backends behind cupola's interfaces: the datalake (pyarrow.fs) and the record stores."""
