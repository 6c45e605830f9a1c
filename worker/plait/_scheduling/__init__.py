"""Schedules without I/O: when a cron schedule ticks (:mod:`.cron`) and what to do about the ticks
that are due (:mod:`.planning`). The clock is an input. The operator's schedule controller
(:mod:`plait_operator.schedules`) and the ``plait schedule`` commands use them."""
