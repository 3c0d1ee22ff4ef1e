(method_invocation object: (_) @qualifier name: (identifier) @call)
(method_invocation !object name: (identifier) @call)
(object_creation_expression type: (type_identifier) @type)
(type_identifier) @type
