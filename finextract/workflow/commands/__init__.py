"""The subcommands of ``python -m finextract``, grouped by the package's layers.

Each module holds, per subcommand, ``add_<command>(sub)`` (its options) right above ``_<command>(args)`` (its
handler); ``options`` holds what several commands share. ``finextract.workflow.cli.build_parser`` adds them all.
"""
