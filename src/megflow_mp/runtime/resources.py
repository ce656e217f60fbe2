"""Resources at run time: built lazily, once per process and scope, released with their scope.

A node sees the resources named in its ``res`` (bindings planned by :mod:`megflow_mp.plan`: a
:class:`~megflow_mp.plan.ResBinding` names the scope, 0 for the app's global resources, otherwise
the graph instance that declares it). ``self.<name>`` is a :class:`LazyResource`; the object is
built by its registered factory ``factory(name, args)`` on first use in this process and shared by
every node of the process bound to the same scope and name. A scope's objects are dropped (their
last reference here) when the graph instance owning it is destroyed; global ones live as long as
the process.
"""

from __future__ import annotations


class LazyResource:
    """What ``self.<resource>`` is: the resource object, built on first use in this process."""

    __slots__ = ("_get",)

    def __init__(self, get):
        object.__setattr__(self, "_get", get)

    def __getattr__(self, name):
        return getattr(self._get(), name)

    def __getitem__(self, key):
        return self._get()[key]

    def __len__(self):
        return len(self._get())

    def __iter__(self):
        return iter(self._get())

    def __call__(self, *args, **kwargs):
        return self._get()(*args, **kwargs)


class Resources:
    """The resource objects of one process, by ``(scope, name)``."""

    def __init__(self, registry):
        self.registry = registry
        self.objects: dict[tuple, object] = {}
        self.scope_top: dict[int, int] = {}  # scope -> the top instance whose destruction releases it

    def bind(self, binding, top: int) -> LazyResource:
        """The attribute a node of instance ``top`` sees for ``binding``."""
        if binding.scope:
            self.scope_top[binding.scope] = top
        return LazyResource(lambda: self.get(binding))

    def get(self, binding):
        """The object of ``binding``, built now if this process has none yet (the factory's
        exception propagates to the node that used it)."""
        key = (binding.scope, binding.name)
        obj = self.objects.get(key)
        if obj is None:
            rtype = self.registry.resources[binding.ty]
            obj = self.objects[key] = rtype.factory(binding.name, dict(binding.args))
        return obj

    def release(self, top: int) -> None:
        """Graph instance ``top`` was destroyed: drop the objects of the scopes it owned."""
        for key in [k for k in self.objects if self.scope_top.get(k[0]) == top]:
            del self.objects[key]
        for scope in [s for s, t in self.scope_top.items() if t == top]:
            del self.scope_top[scope]
