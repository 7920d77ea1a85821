OPS = {
    'tag': lambda x: x,
    'dbl': lambda x: x * 2,
    'sq': lambda x: x * x,
}
