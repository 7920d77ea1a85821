class BaseConstructor:
    multi = {}

    @classmethod
    def add_multi(cls, prefix, fn):
        if "multi" not in cls.__dict__:
            cls.multi = cls.multi.copy()
        cls.multi[prefix] = fn

    def build(self, tag):
        for prefix, fn in type(self).multi.items():
            if tag.startswith(prefix):
                return fn(self, tag[len(prefix):])
        return f"refused {tag}"


class FullConstructor(BaseConstructor):
    def make_object(self, name):
        return f"object {name}"

    def make_name(self, name):
        return f"name {name}"


class UnsafeConstructor(FullConstructor):
    pass


FullConstructor.add_multi("python/name:", FullConstructor.make_name)
UnsafeConstructor.add_multi("python/object:", UnsafeConstructor.make_object)
