"""The CompreSSM demo of ``ctrlreduce-train``: tasks, a sequence classifier, the comparison.

Not part of the library's API: it needs the ``demo`` extra
(``pip install "ctrlreduce[demo]"``: torch, tqdm, scikit-learn), which the
library itself (``ctrlreduce[torch]``) does not.

Modules
-------
``train``   the command line (``ctrlreduce-train``, or
            ``python -m ctrlreduce_torch.demo.train``): full size vs CompreSSM
            vs small from scratch, with ``--quick`` for a smoke run
``data``    the ``tones`` and ``digits`` tasks, built locally (no download)
``models``  ``SequenceClassifier``: encoder, residual SSM blocks, pooling, head

Nothing is imported here, so that ``python -m ctrlreduce_torch.demo.train``
runs the module once.
"""
