class BaseConstructor:
    constructors = {}

    @classmethod
    def add_constructor(cls, tag, fn):
        if "constructors" not in cls.__dict__:
            cls.constructors = cls.constructors.copy()
        cls.constructors[tag] = fn

    def construct(self, tag, value):
        fn = self.constructors.get(tag)
        if fn is None:
            return "unknown tag " + tag
        return fn(self, value)


class FullConstructor(BaseConstructor):
    def construct_str(self, value):
        return str(value)

    def construct_object(self, value):
        return "ARBITRARY OBJECT " + str(value)


class UnsafeConstructor(FullConstructor):
    pass


FullConstructor.add_constructor("str", FullConstructor.construct_str)
UnsafeConstructor.add_constructor("object", UnsafeConstructor.construct_object)
