"""Label-free adaptation of a shipped model to the microscope it sits beside (seeds 000 and 003).

``copilot adapt`` takes a stream's recent unlabeled frames (or a folder), adapts the model without labels
(:mod:`selftrain`: cheap, mean-teacher self-training; :mod:`appearance`: the simulator's masks rendered in the
target's appearance, then fine-tuned on), writes a new model version with lineage (:mod:`engine_folder`), judges
it with label-free checks (:mod:`checks`) and promotes it into the user's model folder only if they pass
(:mod:`promote`, with rollback). The running daemon picks a promoted model up between frames (:mod:`hotswap`), and
can start an adaptation itself when the stream drifts (:mod:`auto`). torch is needed (the ``train`` extra).
"""
