-- Education bureau: student status (学籍) of primary and junior-high pupils.
-- Habits: the 学籍号 is 'G' + the pupil's ID number, gender '1'/'2', the birth date
-- as 'YYYY/MM/DD' text, guardians as name + ID columns, addresses without a prefix.

CREATE TABLE xs_xj (                      -- 学生学籍
    xjh       varchar(20) PRIMARY KEY,      -- 学籍号
    xm        varchar(50) NOT NULL,
    xb        char(1),
    csrq      varchar(10),                  -- 出生日期 YYYY/MM/DD
    sfzjh     varchar(24),                  -- 身份证件号
    xxmc      varchar(100) NOT NULL,        -- 学校名称
    nj        varchar(10),                  -- 年级 一年级 ... 九年级
    rxny      char(6),                      -- 入学年月 YYYYMM
    jhrxm     varchar(50),                  -- 监护人姓名
    jhrsfzh   varchar(24),                  -- 监护人身份证号
    jzdz      varchar(200),                 -- 居住地址
    xjzt      varchar(4) NOT NULL DEFAULT '在读',  -- 学籍状态 在读 / 毕业 / 转出
    gxsj      timestamp NOT NULL DEFAULT localtimestamp(0)
);
ALTER TABLE xs_xj REPLICA IDENTITY FULL;
