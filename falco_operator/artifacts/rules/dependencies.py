"""What a change to a rule set reaches, so the compile after each file redoes only that.

Falco compiles the rules collected so far after every file it loads. A macro's or rule's compile depends on its
own text, on the lists whose names its text holds (Falco substitutes them as text, and the items of a list may
name further lists), and on the macros its condition uses. ``Dependencies`` remembers those links as items are
compiled; after the next file, the lists, macros and rules that file defined or changed lead to exactly the items
whose compile may differ. The links are kept generously (a word that is no list, a use since replaced): that only
compiles an item again, never skips one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

Item = tuple[str, str]
"""("macro" or "rule", name)."""
DELIMITERS = " \t\n\r(),="
"""Where Falco's list substitution lets a list name start and end: a name it substitutes is a whole chunk between
these."""
_SPLIT = str.maketrans(dict.fromkeys(DELIMITERS, " "))


def chunks(text: str) -> set[str]:
    return set(text.translate(_SPLIT).split())


class Dependencies:
    def __init__(self) -> None:
        self._by_word: defaultdict[str, set[Item]] = defaultdict(set)
        self._texts: dict[Item, str] = {}
        self._list_users: defaultdict[str, set[str]] = defaultdict(set)
        self._macro_users: defaultdict[str, set[Item]] = defaultdict(set)

    def copy(self) -> Dependencies:
        """Links that grow apart from these."""
        copied = Dependencies()
        copied._by_word.update((word, set(items)) for word, items in self._by_word.items())
        copied._texts.update(self._texts)
        copied._list_users.update((word, set(names)) for word, names in self._list_users.items())
        copied._macro_users.update((macro, set(items)) for macro, items in self._macro_users.items())
        return copied

    def text(self, item: Item, text: str) -> None:
        """The text of a macro's or rule's condition (a rule's with its exceptions), before substitution."""
        self._texts[item] = text
        for word in chunks(text):
            self._by_word[word].add(item)

    def list_items(self, name: str, items: Iterable[str]) -> None:
        for item in items:
            for word in chunks(item):
                self._list_users[word].add(name)

    def uses(self, item: Item, macros: Iterable[str]) -> None:
        """The macros a compiled condition refers to."""
        for macro in macros:
            self._macro_users[macro].add(item)

    def lists_reached(self, changed: Iterable[str]) -> set[str]:
        """The changed lists and every list whose items name one of them, however indirectly."""
        reached = set(changed)
        todo = list(reached)
        while todo:
            for user in self._list_users.get(todo.pop(), ()):
                if user not in reached:
                    reached.add(user)
                    todo.append(user)
        return reached

    def naming(self, lists: Iterable[str]) -> set[Item]:
        """The macros and rules whose text names one of these lists."""
        found: set[Item] = set()
        for name in lists:
            if chunks(name) == {name}:
                found |= self._by_word.get(name, set())
            else:  # a name with a delimiter in it: look for it anywhere
                found |= {item for item, text in self._texts.items() if name in text}
        return found

    def using(self, macros: Iterable[str]) -> set[Item]:
        """The macros and rules that use one of these macros, also through other macros."""
        found: set[Item] = set()
        todo = list(macros)
        seen = set(todo)
        while todo:
            for user in self._macro_users.get(todo.pop(), ()):
                if user not in found:
                    found.add(user)
                    kind, name = user
                    if kind == "macro" and name not in seen:
                        seen.add(name)
                        todo.append(name)
        return found
