#!/usr/bin/env python3
"""Counts helgrind's reports of a scheduler thread touching MLX array state
(status, primitive, flags) against a queue thread: the race of issue 13.
Usage: helgrind_races.py LOG... (see docs/thread_checking.md)."""
import re, sys
for path in sys.argv[1:]:
    text = open(path).read()
    blocks = re.split(r'\n==\d+== (?=Possible data race)', text)[1:]
    n = 0; shown = 0
    for b in blocks:
        b = re.sub(r'==\d+== ', '', b)
        accesses = b.split(' Address ')[0].split('This conflicts with a previous')
        sched = [a for a in accesses if 'process_main' in a or 'erts_schedule' in a]
        queue = [a for a in accesses if 'emlx::queue::serve' in a]
        mlx_state = re.compile(r'emlx::is_lazy|emlx::is_ready|emlx::strides_of|is_available|array::status|emlx::born_ready|emlx::allocates|emlx::check_fits|has_primitive|primitive\(\)')
        if sched and queue and any(mlx_state.search(a) for a in sched):
            n += 1
            if shown < 2:
                print(b[:1800]); print('------'); shown += 1
    print(path, 'scheduler-vs-queue races on MLX array state:', n)
