"""Benchmark: classifying user agents (``castmetrics.measurement.useragents``).

Targets: a user agent not seen before costs under 50 µs on average; a cached lookup under 2 µs.
Reference, measured in the same run: the OPAWG algorithm as a plain loop of ``re.search`` over the
lists' patterns in order (entity lists to the first match, then ``devices``), without crawlerdetect or
ua-parser, which the classifier's figures include.

The user agents are every example of the lists plus synthetic variants of each (other digits, so other
versions and builds) and clients no list names. "Not seen before" is measured twice, and the target
applies to both: cold, in fresh processes (the classifier just loaded: its RE2 sets and ua-parser's
regexes build their DFA states as they go), and steady, in a classifier that has already classified other
variants, its LRU caches cleared (the state of a running recorder). Prints one JSON object and PASS or
FAIL, and writes the JSON to ``bench/results/useragents.json``.
"""

from __future__ import annotations

import functools
import gc
import json
import random
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from castmetrics.measurement import useragents

TARGET_NEW_US = 50.0
TARGET_CACHED_US = 2.0
RESULTS = Path(__file__).resolve().parent / "results" / "useragents.json"
_DIGITS = re.compile(r"\d+")


def variants(examples: list[str], seed: int) -> list[str]:
    """Each example with its numbers replaced by others of the same length (new versions, builds)."""
    rnd = random.Random(seed)

    def renumber(match: re.Match[str]) -> str:
        return "".join(rnd.choice("0123456789") for _ in match.group())

    return [_DIGITS.sub(renumber, example) for example in examples]


def unknown_agents(n: int, seed: int) -> list[str]:
    """Clients no list names (the slowest path: crawlerdetect, then ua-parser's browser and OS)."""
    rnd = random.Random(seed)
    shapes = [
        "IndiePlayer{a}/{b}.{c} (Linux; Android {d}; Pixel {c})",
        "Mozilla/5.0 (X11; Linux x86_64; rv:{a}.0) Gecko/20100101 Waterfox/{a}.{b}",
        "PodKit{a}/{b} CFNetwork/{a}{b}.{c} Darwin/{d}.0.0",
        "Mozilla/5.0 (compatible; ResearchFetcher{a}/{b}.{c}; +https://example.org/fetcher)",
        "SmartSpeakerOS/{b}.{c} Model-{a}",
    ]
    return [
        rnd.choice(shapes).format(
            a=rnd.randrange(1, 999), b=rnd.randrange(0, 99), c=rnd.randrange(0, 99), d=rnd.randrange(5, 15)
        )
        for _ in range(n)
    ]


def corpora(classifier: useragents.Classifier) -> tuple[list[str], list[str], list[str]]:
    """(the measured user agents, other variants to warm up with, the unknown ones among the measured)."""
    examples = [
        example
        for name in ("bots", "apps", "libraries", "browsers", "devices")
        for entry in classifier.lists[name].entries
        for example in entry.examples
    ]
    unknown = unknown_agents(len(examples) // 10, seed=2)
    corpus = list(dict.fromkeys(examples + variants(examples, seed=2) + unknown))
    warm_up = variants(examples, seed=1) + unknown_agents(len(examples) // 10, seed=1)
    return corpus, warm_up, unknown


def plain_loop(classifier: useragents.Classifier, agents: list[str]) -> float:
    """µs per user agent of the OPAWG algorithm as a plain loop over ``re`` patterns."""
    entities = [
        re.compile(entry.pattern, useragents.PATTERN_FLAGS)
        for name, _ in useragents.ENTITY_LISTS
        for entry in classifier.lists[name].entries
    ]
    devices = [re.compile(e.pattern, useragents.PATTERN_FLAGS) for e in classifier.lists["devices"].entries]
    bots = len(classifier.lists["bots"].entries)
    started = time.perf_counter()
    for agent in agents:
        text = agent.replace("\n", "").replace("\r", "")
        first = next((i for i, rx in enumerate(entities) if rx.search(text)), -1)
        if first < 0 or first >= bots:
            next((i for i, rx in enumerate(devices) if rx.search(text)), -1)
    return (time.perf_counter() - started) / len(agents) * 1e6


def opawg_scan(classifier: useragents.Classifier, agent: str) -> None:
    """The classifier's OPAWG part alone: the entity lists' sets in order, then ``devices``."""
    data = agent.encode()
    for name, _ in useragents.ENTITY_LISTS:
        if classifier.sets[name].first(agent, data) >= 0:
            break
    classifier.sets["devices"].first(agent, data)


def timed(function: Callable[[str], object], agents: list[str]) -> float:
    started = time.perf_counter()
    for agent in agents:
        function(agent)
    return (time.perf_counter() - started) / len(agents) * 1e6


def cold() -> None:
    """In a fresh process: load, then classify every user agent once. Prints JSON."""
    started = time.perf_counter()
    classifier = useragents.Classifier.from_folder()
    load_s = time.perf_counter() - started
    corpus, _, _ = corpora(classifier)
    print(json.dumps({"load_s": load_s, "cold_us": timed(classifier.classify, corpus)}))


def main() -> None:
    if sys.argv[1:] == ["--cold"]:
        cold()
        return
    command = [sys.executable, "-m", "bench.useragents", "--cold"]
    colds = [json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout) for _ in range(3)]
    cold_us = statistics.median(run["cold_us"] for run in colds)
    load_s = statistics.median(run["load_s"] for run in colds)

    classifier = useragents.Classifier.from_folder()
    corpus, warm_up, unknown = corpora(classifier)
    gc.collect()
    # (a) The reference, best of three; and on the user agents no list names (every pattern searched).
    reference_us = min(plain_loop(classifier, corpus) for _ in range(3))
    reference_unknown_us = min(plain_loop(classifier, unknown) for _ in range(3))

    # (b) Not seen before, steady: other variants first, then every LRU cleared; per type too.
    timed(classifier.classify, warm_up)
    runs = []
    for _ in range(3):
        classifier.cache_clear()
        by_type: dict[str, list[int]] = defaultdict(list)
        total = 0
        for agent in corpus:
            t0 = time.perf_counter_ns()
            info = classifier.classify(agent)
            elapsed = time.perf_counter_ns() - t0
            total += elapsed
            by_type["bot (crawlerdetect)" if info.bot_source == "crawlerdetect" else str(info.type)].append(elapsed)
        runs.append((total / len(corpus) / 1000, by_type))
    steady_us, by_type = min(runs, key=lambda run: run[0])
    scan_us = min(timed(functools.partial(opawg_scan, classifier), corpus) for _ in range(3))

    # (c) Cached lookups: the same user agents again.
    cached_us = min(timed(classifier.classify, corpus) for _ in range(5))
    module_cached_us = min(timed(useragents.classify, corpus) for _ in range(5))

    passed = max(steady_us, cold_us) < TARGET_NEW_US and max(cached_us, module_cached_us) < TARGET_CACHED_US
    result = {
        "benchmark": "useragent_classification",
        "user_agents": len(corpus),
        "patterns": {name: len(classifier.lists[name].entries) for name in useragents.LIST_NAMES},
        "load_s": round(load_s, 3),
        "reference_plain_loop_us": round(reference_us, 2),
        "reference_plain_loop_unknown_us": round(reference_unknown_us, 2),
        "new_user_agent_steady_us": round(steady_us, 2),
        "new_user_agent_cold_us": round(cold_us, 2),
        "new_user_agent_steady_by_type_us": {
            kind: {"n": len(times), "mean_us": round(statistics.fmean(times) / 1000, 2)}
            for kind, times in sorted(by_type.items())
        },
        "opawg_scan_only_us": round(scan_us, 2),
        "cached_us": round(cached_us, 3),
        "cached_module_classify_us": round(module_cached_us, 3),
        "ratio_reference_to_new_steady": round(reference_us / steady_us, 1),
        "ratio_reference_to_new_cold": round(reference_us / cold_us, 1),
        "ratio_reference_to_opawg_scan": round(reference_us / scan_us, 1),
        "ratio_new_steady_to_cached": round(steady_us / cached_us, 1),
        "set_fallbacks": sum(patterns.fallbacks for patterns in classifier.sets.values()),
        "target_new_us": TARGET_NEW_US,
        "target_cached_us": TARGET_CACHED_US,
        "target_met": passed,
    }
    text = json.dumps(result, indent=2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n", encoding="utf-8")
    print(text)
    print("PASS" if passed else "FAIL")


if __name__ == "__main__":
    main()
