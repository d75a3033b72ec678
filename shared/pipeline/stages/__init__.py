"""One module per stage of a run, in the order a run goes through them: ``budget`` (converted),
``upload`` (uploading), ``job`` (training), ``deploy`` (trained, deploying), ``evaluation`` (deployed,
evaluating), ``promotion`` (evaluated) and ``finish`` (terminal: cleanup and report).

Each stage handler is ``handler(pipeline, settings, run, *, deadline, wait_for_files) -> bool``: it does
one bounded step and says whether the run progressed (False: it waits on something remote). The driver
(``shared.pipeline.advance``) leases the run, calls the handler of its state and records errors.
"""
