(class_declaration name: (identifier) @name body: (class_body)) @definition.class
(record_declaration name: (identifier) @name body: (class_body)) @definition.class
(interface_declaration name: (identifier) @name body: (interface_body)) @definition.interface
(enum_declaration name: (identifier) @name body: (enum_body)) @definition.enum
(annotation_type_declaration name: (identifier) @name) @definition.interface
(method_declaration name: (identifier) @name body: (block) @body) @definition.method
(method_declaration name: (identifier) @name !body) @definition.method
(constructor_declaration name: (identifier) @name body: (constructor_body) @body) @definition.method
