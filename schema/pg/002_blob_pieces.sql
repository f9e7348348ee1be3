-- PostgreSQL migration 2: checkpoint bytes stored uncompressed (out of line,
-- never compressed), so that a download's piece, substring(data FROM o FOR n),
-- reads only the TOAST chunks of that piece. A compressed value has to be
-- decompressed from its start up to the piece: a download of k pieces then
-- reads k^2 / 2 of them (measured on 32 MiB of compressible floats: 32 pieces
-- of 1 MiB in 2.47 s compressed, 0.12 s stored so). Trained weights gain
-- little from pglz anyway (random floats were left uncompressed by it).
-- Applies to values written from now on; bytes stored before keep their form
-- (still read correctly, only slower when they were compressed).
ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;
