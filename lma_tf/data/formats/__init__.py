"""One module per input format of the data contract, reader and writer side by side.

`npz` (one slice per file), `npy` (the authors' pickled list of dicts), `mat`
(DENSEanalysis exports, MATLAB v5 and v7.3) and `record_sheet` (the CSV
manifest and the per-slice scar CSV). Each spells its field names once, as
module constants that its reader and its writer share, so the two cannot drift
apart. `lma_tf.data.sources` finds files and dispatches to the readers;
`lma_tf.data.synthetic_io` dispatches to the writers. The formats and the
rules for their ambiguous cases are described in docs/data.md.
"""
